-- coldpath `telemetry` (silver) for Synapse serverless SQL: one row per unique reading.
-- Point BULK at the table's root (partitions, event_date=…, are found by Synapse);
-- replace the account and path with your lake's (jobs/nightly.toml: lake).
-- Types are explicit: without WITH, Synapse infers string widths from a sample.
-- Strings use a UTF-8 collation, so varchar(n) counts bytes of UTF-8.
-- `source_file` is a blob's path in its container: up to 1,024 characters, so up to
-- 4,096 bytes of UTF-8 (a local source's paths are shorter than PATH_MAX, 4,096 bytes).
CREATE VIEW dbo.telemetry AS
SELECT *
FROM OPENROWSET(
    BULK 'https://contosoiotlake.dfs.core.windows.net/lake/iot/telemetry/',
    FORMAT = 'DELTA'
) WITH (
    device_id     varchar(1024) COLLATE Latin1_General_100_BIN2_UTF8,
    device_type   varchar(256)  COLLATE Latin1_General_100_BIN2_UTF8,
    event_time    datetime2(6),
    temperature   float,
    pressure      float,
    vibration     float,
    priority      varchar(64)   COLLATE Latin1_General_100_BIN2_UTF8,
    message_id    varchar(8000) COLLATE Latin1_General_100_BIN2_UTF8,
    enqueued_time datetime2(6),
    source_file   varchar(4096) COLLATE Latin1_General_100_BIN2_UTF8,
    ingested_at   datetime2(6),
    run_id        varchar(36)   COLLATE Latin1_General_100_BIN2_UTF8,
    event_date    date
) AS rows;
