from typing import Literal

ApiErrorUnauthorizedStatus = Literal[401]

API_ERROR_UNAUTHORIZED_STATUS_VALUES: set[ApiErrorUnauthorizedStatus] = {
    401,
}


def check_api_error_unauthorized_status(value: int) -> ApiErrorUnauthorizedStatus:
    if value in API_ERROR_UNAUTHORIZED_STATUS_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {API_ERROR_UNAUTHORIZED_STATUS_VALUES!r}")
