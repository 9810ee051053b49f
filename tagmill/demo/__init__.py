"""The generated demo marketplace used by the demo build and the tests."""
