-- coldpath `telemetry_minute` (gold) for Synapse serverless SQL: per device and UTC minute
-- with a reading, what the dashboards read instead of scanning silver.
-- Point BULK at the table's root (partitions, event_date=…, are found by Synapse);
-- replace the account and path with your lake's (jobs/nightly.toml: lake).
CREATE VIEW dbo.telemetry_minute AS
SELECT *
FROM OPENROWSET(
    BULK 'https://contosoiotlake.dfs.core.windows.net/lake/iot/telemetry_minute/',
    FORMAT = 'DELTA'
) WITH (
    device_id      varchar(1024) COLLATE Latin1_General_100_BIN2_UTF8,
    minute_start   datetime2(6),
    reading_count  bigint,
    temp_mean      float,
    temp_min       float,
    temp_max       float,
    pressure_mean  float,
    vibration_mean float,
    vibration_max  float,
    event_date     date
) AS rows;
