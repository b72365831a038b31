from typing import Literal

ApiErrorForbiddenStatus = Literal[403]

API_ERROR_FORBIDDEN_STATUS_VALUES: set[ApiErrorForbiddenStatus] = {
    403,
}


def check_api_error_forbidden_status(value: int) -> ApiErrorForbiddenStatus:
    if value in API_ERROR_FORBIDDEN_STATUS_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {API_ERROR_FORBIDDEN_STATUS_VALUES!r}")
