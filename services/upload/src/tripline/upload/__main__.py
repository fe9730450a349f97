from tripline.common.serve import serve
from tripline.upload.app import INSTRUMENTED_LIBRARIES, create_app
from tripline.upload.settings import UploadSettings


def main() -> None:
    serve(create_app, UploadSettings(), libraries=INSTRUMENTED_LIBRARIES)


if __name__ == "__main__":
    main()
