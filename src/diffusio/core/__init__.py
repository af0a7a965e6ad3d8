"""The core engine: processes, parameterizations, the model interface, losses, samplers,
steering (guidance and constraints), likelihood and the exact oracle."""
