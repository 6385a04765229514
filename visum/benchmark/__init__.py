"""The worlds benchmark: models trained per world, what they rely on (measured by removing
parts), and how well a pipeline's summaries tell it (issue 14; docs/worlds.md)."""
