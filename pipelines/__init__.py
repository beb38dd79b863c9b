"""Ray Data pipelines the CLI launches. They move work items through the library's stages
(`spacemind_cli.jobs.stages`); the stage logic itself is never written here."""
