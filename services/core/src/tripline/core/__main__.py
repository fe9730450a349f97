from tripline.common.serve import serve
from tripline.core.app import INSTRUMENTED_LIBRARIES, create_app
from tripline.core.settings import CoreSettings


def main() -> None:
    serve(create_app, CoreSettings(), libraries=INSTRUMENTED_LIBRARIES)


if __name__ == "__main__":
    main()
