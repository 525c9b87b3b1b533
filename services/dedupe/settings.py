from services.common.settings import ServiceSettings


class DedupeSettings(ServiceSettings):
    service_name: str = "dedupe"
    port: int = 8002
