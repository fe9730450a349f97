from tripline.common.serve import serve
from tripline.monitor.app import INSTRUMENTED_LIBRARIES, create_app
from tripline.monitor.settings import MonitorSettings


def main() -> None:
    serve(create_app, MonitorSettings(), libraries=INSTRUMENTED_LIBRARIES)


if __name__ == "__main__":
    main()
