-- coldpath `features_hourly` (gold) for Synapse serverless SQL: one row per device and UTC hour.
-- Point BULK at the table's root (partitions, feature_date=…, are found by Synapse);
-- replace the account and path with your lake's (jobs/nightly.toml: lake).
CREATE VIEW dbo.features_hourly AS
SELECT *
FROM OPENROWSET(
    BULK 'https://contosoiotlake.dfs.core.windows.net/lake/iot/features_hourly/',
    FORMAT = 'DELTA'
) WITH (
    device_id                varchar(1024) COLLATE Latin1_General_100_BIN2_UTF8,
    window_start             datetime2(6),
    device_type              varchar(256) COLLATE Latin1_General_100_BIN2_UTF8,
    reading_count            bigint,
    temp_mean                float,
    temp_min                 float,
    temp_max                 float,
    temp_std                 float,
    pressure_mean            float,
    vibration_mean           float,
    vibration_std            float,
    vibration_max            float,
    temp_rolling_mean_6h     float,
    temp_rolling_std_6h      float,
    vibration_rolling_std_6h float,
    temp_spike_count         bigint,
    hour                     int,
    day_of_week              int,
    days_since_maintenance   int,
    maintenance_status       varchar(16)  COLLATE Latin1_General_100_BIN2_UTF8,
    failure_within_7d        bit,
    failure_within_14d       bit,
    lookback_complete        bit,
    coverage                 float,
    max_gap_s                float,
    baseline_hours           bigint,
    temp_baseline_mean       float,
    temp_baseline_std        float,
    temp_zscore              float,
    vibration_zscore         float,
    feature_date             date
) AS rows;
