from typing import Literal

ApiErrorTooManyRequestsStatus = Literal[429]

API_ERROR_TOO_MANY_REQUESTS_STATUS_VALUES: set[ApiErrorTooManyRequestsStatus] = {
    429,
}


def check_api_error_too_many_requests_status(value: int) -> ApiErrorTooManyRequestsStatus:
    if value in API_ERROR_TOO_MANY_REQUESTS_STATUS_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {API_ERROR_TOO_MANY_REQUESTS_STATUS_VALUES!r}")
