import io
import json
import logging

from sanctum.log import configure_logging


def test_json_lines_carry_extra_fields_and_no_traceback():
    stream = io.StringIO()
    configure_logging("INFO", json_lines=True, stream=stream)
    log = logging.getLogger("sanctum.test")
    log.info("quote verified", extra={"tcb_status": "UpToDate"})
    try:
        raise RuntimeError("secret-in-traceback")  # noqa: TRY301
    except RuntimeError:
        log.exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "quote verified"
    assert lines[0]["tcb_status"] == "UpToDate"
    assert lines[0]["level"] == "info"
    assert lines[1]["exception"] == "RuntimeError"
    assert "secret-in-traceback" not in stream.getvalue()


def test_text_format_is_default():
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    logging.getLogger("sanctum.test").debug("hello")
    assert "DEBUG sanctum.test: hello" in stream.getvalue()
