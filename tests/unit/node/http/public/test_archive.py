from __future__ import annotations

import io
import tarfile

from communs.node.http.public.archive import END, layout
from communs.node.http.public.files import PublicFile


def test_layout_reads_back_with_tarfile_and_length_is_exact() -> None:
    contents = {"a.csv": b"x,y\n1,2\n", "empty": b"", "dir/données ✓.txt": b"z" * 1000,
                "deep/" + "long" * 60 + ".bin": b"\x00\x01" * 300}
    files = [PublicFile(p, len(b), ()) for p, b in contents.items()]
    members, total = layout(files, mtime=1_700_000_000)
    out = bytearray()
    for m in members:
        out += m.header + contents[m.file.path] + b"\0" * m.padding
    out += END
    assert len(out) == total
    with tarfile.open(fileobj=io.BytesIO(bytes(out)), mode="r:") as tar:
        names = tar.getnames()
        assert names == list(contents)
        for name in names:
            member = tar.getmember(name)
            assert member.isreg() and member.mtime == 1_700_000_000
            fh = tar.extractfile(member)
            assert fh is not None and fh.read() == contents[name]
