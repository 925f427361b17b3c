"""The bundled spec library (data)."""
