"""A small real Django project for the tests of ``authtoken.integrations.django``:
settings with the ``AUTHTOKEN`` dict and DRF configured, URLs and API views."""
