from tripline.common.serve import serve
from tripline.tracking.app import INSTRUMENTED_LIBRARIES, create_app
from tripline.tracking.settings import TrackingSettings


def main() -> None:
    serve(create_app, TrackingSettings(), libraries=INSTRUMENTED_LIBRARIES)


if __name__ == "__main__":
    main()
