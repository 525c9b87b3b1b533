from services.common.runtime import serve
from services.dedupe.app import create_app
from services.dedupe.settings import DedupeSettings

settings = DedupeSettings()
serve(create_app(settings), settings)
