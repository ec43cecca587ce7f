"""Moved to :mod:`lab.analysis.claims` (this re-export stays for one release; ``python -m lab.claims`` still works)."""
import sys

from lab.analysis.claims import *  # noqa: F401,F403
from lab.analysis.claims import CLAIMS, CLAIMS_BY_KEY, VERDICTS, Check, Claim, evaluate, main, verdict  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
