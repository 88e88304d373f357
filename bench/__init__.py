"""Latency benchmarking: runners in this process (`bench MODEL_DIR|ARCH`), a running server over HTTP
(`bench http URL`), the statistics both share, and their reports."""
