from tripline.common.serve import serve
from tripline.core.app import create_app
from tripline.core.settings import CoreSettings


def main() -> None:
    serve(create_app, CoreSettings())


if __name__ == "__main__":
    main()
