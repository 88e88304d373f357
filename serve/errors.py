"""The one error the HTTP layer raises: a status code and a message, answered as {"error": message}."""


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
