from typing import Literal

ApiErrorUnprocessableEntityStatus = Literal[422]

API_ERROR_UNPROCESSABLE_ENTITY_STATUS_VALUES: set[ApiErrorUnprocessableEntityStatus] = {
    422,
}


def check_api_error_unprocessable_entity_status(value: int) -> ApiErrorUnprocessableEntityStatus:
    if value in API_ERROR_UNPROCESSABLE_ENTITY_STATUS_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {API_ERROR_UNPROCESSABLE_ENTITY_STATUS_VALUES!r}")
