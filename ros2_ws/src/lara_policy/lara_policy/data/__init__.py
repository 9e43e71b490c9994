"""Moved: lara_policy.data is now lara_policy.formats (2026-12). The old module paths below still
import (the same module objects) with one FutureWarning; they go in the next release."""
