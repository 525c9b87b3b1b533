from services.common.runtime import serve
from services.intake.settings import IntakeSettings

serve("services.intake.app:create_app", IntakeSettings())
