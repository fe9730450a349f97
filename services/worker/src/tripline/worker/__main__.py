from tripline.common.logs import configure_logging
from tripline.common.telemetry import configure_tracing
from tripline.worker.app import INSTRUMENTED_LIBRARIES, create_worker_app, worker_argv
from tripline.worker.brokerloss import survive_broker_loss
from tripline.worker.settings import WorkerSettings
from tripline.worker.tracing import flush_spans_as_children_stop


def main() -> None:
    settings = WorkerSettings()
    configure_logging(settings.service_name, settings.log_level, json_output=settings.log_json)
    configure_tracing(settings, INSTRUMENTED_LIBRARIES)
    flush_spans_as_children_stop()
    survive_broker_loss()
    create_worker_app(settings).worker_main(argv=worker_argv(settings))


if __name__ == "__main__":
    main()
