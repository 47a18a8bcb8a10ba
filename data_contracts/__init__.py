"""Great Expectations gates between stages: one module per stage boundary and one gate runner."""
