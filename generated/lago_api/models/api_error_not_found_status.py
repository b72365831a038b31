from typing import Literal

ApiErrorNotFoundStatus = Literal[404]

API_ERROR_NOT_FOUND_STATUS_VALUES: set[ApiErrorNotFoundStatus] = {
    404,
}


def check_api_error_not_found_status(value: int) -> ApiErrorNotFoundStatus:
    if value in API_ERROR_NOT_FOUND_STATUS_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {API_ERROR_NOT_FOUND_STATUS_VALUES!r}")
