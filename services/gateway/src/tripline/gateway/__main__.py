from tripline.common.serve import serve
from tripline.gateway.app import create_app
from tripline.gateway.settings import GatewaySettings


def main() -> None:
    serve(create_app, GatewaySettings())


if __name__ == "__main__":
    main()
