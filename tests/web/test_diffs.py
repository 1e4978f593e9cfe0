"""The diff viewer's reading of a git patch: its files and their line counts."""

from __future__ import annotations

from openjules.web.diffs import split_patch

PATCH = """\
diff --git a/src/app.py b/src/app.py
index 1111111..2222222 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,3 +1,4 @@
 import os
-print("old")
+print("new")
+print("more")
 x = 1
diff --git a/NEW.md b/NEW.md
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/NEW.md
@@ -0,0 +1,2 @@
+# New
+--- not a header: a line that starts with dashes
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index 4444444..0000000
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/old name.txt b/new name.txt
similarity index 90%
rename from old name.txt
rename to new name.txt
index 5555555..6666666 100644
--- a/old name.txt
+++ b/new name.txt
@@ -1 +1 @@
-a
+b
"""


def test_each_file_with_its_counts_and_status() -> None:
    files = split_patch(PATCH)
    summary = [(f.path, f.status, f.added, f.removed) for f in files]
    assert summary == [
        ("src/app.py", "modified", 2, 1),
        ("NEW.md", "added", 2, 0),
        ("gone.txt", "deleted", 0, 1),
        ("new name.txt", "renamed", 1, 1),
    ]
    assert files[3].old_path == "old name.txt"
    # Each part is the file's own slice of the patch, and together they are all of it.
    assert "".join(f.text for f in files) == PATCH
    assert files[1].text.startswith("diff --git a/NEW.md b/NEW.md\n")


def test_anchors_are_ids_whatever_the_path() -> None:
    patch = PATCH.replace("src/app.py", '<script>"x".py')
    anchors = [f.anchor for f in split_patch(patch)]
    assert all(
        a.startswith("file-")
        and set(a[5:]) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
        for a in anchors
    )


def test_no_patch_no_files() -> None:
    assert split_patch("") == []
