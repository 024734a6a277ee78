"""The separate job (stems). Not built yet: see the open issues."""
