"""The one error the HTTP layer raises: a status code and a message, answered as {"error": message}."""

from starlette.responses import JSONResponse


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class ClientGone(ApiError):
    """The client closed its connection before its request body was complete: nobody to answer, not
    a server error. Counted under status 499 (nginx's "client closed request") and logged in one line."""

    def __init__(self, what: str):
        super().__init__(499, f"client disconnected before its {what} was complete")


def error_response(err: Exception) -> JSONResponse:
    """{"error": ...} for what a request raised: an ApiError with its status and headers, anything else
    a 500 (a bug of ours: the client still gets JSON; the traceback goes to the log)."""
    if isinstance(err, ApiError):
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)
    return JSONResponse({"error": f"internal error ({type(err).__name__}); see the server log"}, status_code=500)
