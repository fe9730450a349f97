from tripline.common.serve import serve
from tripline.sandbox.app import INSTRUMENTED_LIBRARIES, create_app
from tripline.sandbox.settings import SandboxSettings


def main() -> None:
    serve(create_app, SandboxSettings(), libraries=INSTRUMENTED_LIBRARIES)


if __name__ == "__main__":
    main()
