"""Operations: metrics, structured logs, failpoints."""
