"""teflon's benchmarks (``make bench``): one load generator, one alert mix, results in docs/benchmarks.md."""
