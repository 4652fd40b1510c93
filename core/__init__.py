"""What every process shares: settings (`config`), object storage (`storage`), the queue's shape and task
names (`queue`), the garment `taxonomy`, the colour `palette`, Prometheus metrics (`metrics`, `metricsdir`).
Imports nothing of ours."""
