from services.common.runtime import serve
from services.dispatch.app import create_app
from services.dispatch.settings import DispatchSettings

settings = DispatchSettings()
serve(create_app(settings), settings)
