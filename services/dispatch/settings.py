from services.common.settings import ServiceSettings


class DispatchSettings(ServiceSettings):
    service_name: str = "dispatch"
    port: int = 8003
