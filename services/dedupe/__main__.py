from services.common.runtime import serve
from services.dedupe.settings import DedupeSettings

serve("services.dedupe.app:create_app", DedupeSettings())
