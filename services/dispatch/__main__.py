from services.common.runtime import serve
from services.dispatch.settings import DispatchSettings

serve("services.dispatch.app:create_app", DispatchSettings())
