"""Storage: SQLite stores per database; the S3 object store on the side."""
