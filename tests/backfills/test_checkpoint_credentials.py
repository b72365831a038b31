"""A password in the checkpoint URL (ftp://user:password@host/...) is a credential: no message shows it."""

from __future__ import annotations

import pytest

from billing_events.backfill import Backfill, CheckpointError

URL = "memory://backfill-user:s3cret-pass@store/credentials-ckpt"


def test_a_checkpoint_error_masks_the_password_of_the_url() -> None:
    Backfill("lago", URL).prepare()

    with pytest.raises(CheckpointError) as raised:
        Backfill("togai", URL).prepare()

    assert "s3cret-pass" not in str(raised.value)
    assert "memory://backfill-user:***@store/credentials-ckpt holds a lago backfill" in str(raised.value)


def test_the_repr_of_a_backfill_masks_the_password_of_its_checkpoint_url() -> None:
    assert "s3cret-pass" not in repr(Backfill("lago", URL))
