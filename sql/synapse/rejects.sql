-- coldpath `rejects` (quarantine) for Synapse serverless SQL: one row per record or file not accepted.
-- Point BULK at the table's root (partitions, run_date=…, are found by Synapse);
-- replace the account and path with your lake's (jobs/nightly.toml: lake).
-- `raw` holds up to 4096 bytes of the record as read (cut at a character boundary), or,
-- for a row an expectation dropped, the whole row as JSON (up to max_record_bytes and
-- more): varchar(max) holds both; an inferred width would cut them.
-- `source_file` is a blob's path in its container: up to 1,024 characters, so up to
-- 4,096 bytes of UTF-8 (a local source's paths are shorter than PATH_MAX, 4,096 bytes).
CREATE VIEW dbo.rejects AS
SELECT *
FROM OPENROWSET(
    BULK 'https://contosoiotlake.dfs.core.windows.net/lake/iot/rejects/',
    FORMAT = 'DELTA'
) WITH (
    run_date    date,
    source_file varchar(4096) COLLATE Latin1_General_100_BIN2_UTF8,
    line        bigint,
    reason      varchar(64)   COLLATE Latin1_General_100_BIN2_UTF8,
    detail      varchar(8000) COLLATE Latin1_General_100_BIN2_UTF8,
    raw         varchar(max)  COLLATE Latin1_General_100_BIN2_UTF8,
    run_id      varchar(36)   COLLATE Latin1_General_100_BIN2_UTF8
) AS rows;
