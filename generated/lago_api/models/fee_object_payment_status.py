from typing import Literal

FeeObjectPaymentStatus = Literal["failed", "pending", "refunded", "succeeded"]

FEE_OBJECT_PAYMENT_STATUS_VALUES: set[FeeObjectPaymentStatus] = {
    "failed",
    "pending",
    "refunded",
    "succeeded",
}


def check_fee_object_payment_status(value: str) -> FeeObjectPaymentStatus:
    if value in FEE_OBJECT_PAYMENT_STATUS_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {FEE_OBJECT_PAYMENT_STATUS_VALUES!r}")
