"""The enhance job (voice clean-up). Not built yet: see the open issues."""
