from tripline.common.serve import serve
from tripline.gateway.app import INSTRUMENTED_LIBRARIES, create_app
from tripline.gateway.settings import GatewaySettings


def main() -> None:
    serve(create_app, GatewaySettings(), libraries=INSTRUMENTED_LIBRARIES)


if __name__ == "__main__":
    main()
