"""Where a model came from: the git commit of the user's project, when there is one."""

import subprocess
from pathlib import Path


def git_commit(directory: Path | None = None) -> str | None:
    """`<sha>` or `<sha>-dirty` for the repository containing `directory`; None outside git."""

    def git(*args: str) -> str | None:
        try:
            completed = subprocess.run(
                ["git", *args],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return completed.stdout.strip() if completed.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if not sha:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if dirty else sha
