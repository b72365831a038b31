from typing import Literal

ApiErrorBadRequestStatus = Literal[400]

API_ERROR_BAD_REQUEST_STATUS_VALUES: set[ApiErrorBadRequestStatus] = {
    400,
}


def check_api_error_bad_request_status(value: int) -> ApiErrorBadRequestStatus:
    if value in API_ERROR_BAD_REQUEST_STATUS_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {API_ERROR_BAD_REQUEST_STATUS_VALUES!r}")
