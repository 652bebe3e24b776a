{{- /*
  An org's events, newest first, each with its seal: the one query behind
  the JSON pages and the CSV and NDJSON exports (docs/api.md).

  It reads only the tier tables that hold the org's events (audit.org_scope;
  two while a plan change is being re-tiered) and bounds every scan by
  occurred_at on both sides, so the planner prunes the leaves outside the
  range before it opens (and locks) them, and each leaf is read backwards
  along an index that starts with org_id, stopping as soon as the page is
  full. The lower bound is the later of the retention floor, the caller's
  `since` and the window's start (a read runs one statement per window of a
  few days, store.Query.windows); the upper bound is the keyset position
  (occurred_at, id) the window starts below: the end of the range, the last
  event of the previous page, or the start of the window above.

  Every input is a placeholder the caller renders: for the pages and counts,
  bind parameters, and the UTC days of the window as literal bounds, which
  the generic plan of the prepared statement prunes on when it is made; for
  the export, because COPY takes no parameters, the time bounds as literals
  and the rest as settings of its transaction.
*/ -}}
{{- define "page_columns" -}}
id, org_id, occurred_at, action, target_type, target_id, actor_type, actor_id, actor_email,
       host(ip) AS ip, user_agent, request_id, metadata
{{- end -}}

{{- /* An event's seal, if it has one yet (docs/feed.md): its seq, its hash
  and the hash of the link before it (32 zero bytes before seq 1), so that
  each row can be recomputed on its own; null while unsealed (and prev_hash
  of a seal older than migration 015 whose link before was gone). */ -}}
{{- define "seal_columns" -}}
sl.seal_seq AS seq, encode(sl.seal_hash, 'hex') AS hash, encode(sl.seal_prev, 'hex') AS prev_hash
{{- end -}}

{{- /* One lookup of audit.seals by its key (org_id, occurred_at, event_id)
  per event: the seal holds the previous link's hash. Only a seal recorded
  before it did, whose previous link was gone when migration 015 filled
  them in, or recorded while that migration was being applied, looks the
  link up by (org_id, seq). A nested loop keeps the events' order, so
  nothing is sorted. */ -}}
{{- define "seal_join" -}}
LEFT JOIN LATERAL (
  SELECT s.seq AS seal_seq, s.hash AS seal_hash,
         coalesce(s.prev_hash, (SELECT p.hash FROM audit.seals p WHERE p.org_id = s.org_id AND p.seq = s.seq - 1)) AS seal_prev
  FROM audit.seals s
  WHERE s.org_id = e.org_id AND s.occurred_at = e.occurred_at AND s.event_id = e.id
) sl ON true
{{- end -}}

{{- /* The event as its action's sentence reads (audit.event_sentence): the
  exports' sentence column; given true, neutralised as a CSV cell. */ -}}
{{- define "sentence" -}}
audit.event_sentence(e.action, e.actor_type, e.actor_id, e.actor_email, e.target_id, e.metadata{{ if . }}, true{{ end }})
{{- end -}}

{{- /* The event's own columns, then its sentence, then its seal (which
  the API reads back from the end of each row). */ -}}
{{- define "csv_columns" -}}
id, org_id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
       action, target_type, audit.csv_cell(target_id) AS target_id, actor_type, actor_id,
       audit.csv_cell(actor_email) AS actor_email, host(ip) AS ip,
       audit.csv_cell(user_agent) AS user_agent, audit.csv_cell(request_id) AS request_id, metadata,
       {{ template "sentence" true }} AS sentence
{{- end -}}

{{- /* The tier tables to read, as one relation. The conditions go outside
  the UNION ALL: PostgreSQL flattens a UNION ALL into one ordered append of
  every leaf only when its branches have no WHERE of their own, and pushes
  the conditions down into each leaf itself. */ -}}
{{- define "tiers" -}}
(
{{- range $i, $tier := .Tiers }}
{{- if $i }}
  UNION ALL
{{- end }}
  SELECT * FROM audit.events_{{ $tier }}
{{- end }}
)
{{- end -}}

{{- /* The conditions. The keyset condition is written on the whole key of
  the index the scans should follow: the actor index when an actor is asked
  for, else the action index for one action, else the primary key. Given
  org_id (and the action or actor) equal, it means the same as
  (occurred_at, id) < (before), and it steers the plan onto that index,
  whose order is the order wanted, so a page stops as soon as it is full
  however rare the action or actor.

  With the window's days as literal bounds (pages and counts), the exact
  bounds are bind parameters, and a generic plan can only guess how much of
  a leaf they keep: two of them on occurred_at it takes for a range keeping
  0.5 %, which makes every index of a leaf look like a one-row probe, and
  the tie went to the primary key, filtering a year of the org's events for
  a rare action. So the lower bound is written as a row comparison (every
  id is at least MinID: it means occurred_at >= since), which the planner
  guesses apart, and the upper one is the keyset condition's alone (it
  implies occurred_at <= before, and < before when the position's id is
  MinID): the filter's index then reads fewer rows than the primary key by
  the filter's selectivity, and wins. The export's bounds are literals,
  which the planner prunes leaves on and estimates from the statistics. */ -}}
{{- define "conditions" -}}
WHERE org_id = {{ .P.Org }}
{{- with .P.From }}
    AND (occurred_at, id) >= ({{ $.P.Since }}, '00000000-0000-0000-0000-000000000000'::uuid)
    AND occurred_at >= {{ . }} AND occurred_at < {{ $.P.To }}
{{- else }}
    AND occurred_at >= {{ .P.Since }} AND occurred_at {{ if .Below }}<{{ else }}<={{ end }} {{ .P.BeforeAt }}
{{- end }}
    AND (org_id, {{ with .KeyCol }}{{ . }}, {{ end }}occurred_at, id) < ({{ .P.Org }}, {{ with .KeyVal }}{{ . }}, {{ end }}{{ .P.BeforeAt }}, {{ .P.BeforeID }})
{{- if .Nothing }}
    AND false
{{- end }}
{{- with .Action }}
    AND action = {{ . }}
{{- end }}
{{- with .AnyAction }}
    AND action = ANY ({{ . }})
{{- end }}
{{- if .Actor }}
    AND {{ .KeyCol }} = {{ .KeyVal }}
{{- end }}
{{- end -}}

{{- /* The query. A page of several actions (a target type, free text
  matching several names) and no actor reads each action along its own
  index, a page's worth at most, keeps the newest of those, and only then
  looks up their seals (a page's worth, not one per action); with an
  actor it follows the actor's index, and an export the primary key,
  filtering the actions as they go. */ -}}
{{- define "events" -}}
SELECT {{ if .CSV }}{{ template "csv_columns" }}{{ else }}{{ template "page_columns" }}{{ end }},
{{- if .Sentence }}
       {{ template "sentence" false }} AS sentence,
{{- end }}
       {{ template "seal_columns" }}
{{- if .Lateral }}
FROM (
  SELECT e.*
  FROM unnest({{ .P.Actions }}::text[]) AS wanted(name), LATERAL (
    SELECT * FROM {{ template "tiers" . }} t
    {{ template "conditions" . }}
    ORDER BY t.occurred_at DESC, t.id DESC
    LIMIT {{ .P.Limit }}
  ) e
  ORDER BY e.occurred_at DESC, e.id DESC
  LIMIT {{ .P.Limit }}
) e
{{ template "seal_join" }}
{{- else }}
FROM {{ template "tiers" . }} e
{{ template "seal_join" }}
{{ template "conditions" . }}
{{- end }}
ORDER BY e.occurred_at DESC, e.id DESC
{{- with .P.Limit }}
LIMIT {{ . }}
{{- end }}
{{- end -}}

{{- /* One event by id, if it is the org's and in its read scope: an event's
  link. Without its time the scan follows the org's primary key through
  every leaf of the range; with it (since = before = the time) it is one
  index probe. */ -}}
{{- define "event" -}}
SELECT {{ template "page_columns" }},
       {{ template "seal_columns" }}
FROM {{ template "tiers" . }} e
{{ template "seal_join" }}
WHERE org_id = {{ .P.Org }} AND id = {{ .P.Event }}
    AND occurred_at >= {{ .P.Since }} AND occurred_at <= {{ .P.BeforeAt }}
    AND occurred_at >= {{ .P.From }} AND occurred_at < {{ .P.To }}
LIMIT 1
{{- end -}}

{{- /* Events per bucket (an hour, day or week of a time zone), for the
  buckets that have any: the chart of the Activity page. It reads what an
  export would, along the same index. */ -}}
{{- define "bucket_counts" -}}
SELECT date_trunc({{ .P.Bucket }}, e.occurred_at, {{ .P.Zone }}) AS start, count(*) AS count
FROM {{ template "tiers" . }} e
{{ template "conditions" . }}
GROUP BY 1
ORDER BY 1
{{- end -}}

{{- /* The export's inputs, as settings local to its transaction. */ -}}
{{- define "export_settings" -}}
SELECT set_config(s.name, s.value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)
{{- end -}}
