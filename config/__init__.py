"""Configuration: the typed settings object and the rendition presets."""
