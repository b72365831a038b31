from typing import Literal

ApiErrorServiceUnavailableStatus = Literal[503]

API_ERROR_SERVICE_UNAVAILABLE_STATUS_VALUES: set[ApiErrorServiceUnavailableStatus] = {
    503,
}


def check_api_error_service_unavailable_status(value: int) -> ApiErrorServiceUnavailableStatus:
    if value in API_ERROR_SERVICE_UNAVAILABLE_STATUS_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {API_ERROR_SERVICE_UNAVAILABLE_STATUS_VALUES!r}")
