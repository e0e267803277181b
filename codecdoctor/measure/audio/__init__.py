"""Audio measurement for the data audit: discover -> reader -> accumulator -> file."""
