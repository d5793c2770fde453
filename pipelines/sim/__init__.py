"""Survey simulator: sky model, cadence, instrument and images, with known truth."""
