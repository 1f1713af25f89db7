-- ctc:no-transaction
-- 0022_guard_indexes: the indexes the pre-dial checks and agent reservations read on
-- every call start, and the one the retention's purge of expired list entries reads.
--
-- Built CONCURRENTLY, so a live PBX keeps writing calls while they build (a plain CREATE
-- INDEX blocks every insert into click_to_call_session until it is done). Each build is
-- preceded by a drop of the same name: a failed concurrent build leaves an invalid index
-- behind, and this file runs again from the start.

-- A caller-ID profile's daily cap counts today's sessions per presented number.
DROP INDEX CONCURRENTLY IF EXISTS click_to_call_session_caller_id_idx;
CREATE INDEX CONCURRENTLY click_to_call_session_caller_id_idx
    ON click_to_call_session (tenant_id, caller_id, created_at DESC)
    WHERE caller_id IS NOT NULL;

-- Reserving an agent reads the agent's newest session: an agent is its agent_id, else the
-- number or endpoint dialled (engine/app/agent_states.py).
DROP INDEX CONCURRENTLY IF EXISTS click_to_call_session_agent_name_idx;
CREATE INDEX CONCURRENTLY click_to_call_session_agent_name_idx
    ON click_to_call_session (tenant_id, (coalesce(agent_id, agent_number)), created_at DESC)
    WHERE coalesce(agent_id, agent_number) IS NOT NULL;

-- Retention deletes the number-list entries whose expiry has passed.
DROP INDEX CONCURRENTLY IF EXISTS phone_number_list_expires_idx;
CREATE INDEX CONCURRENTLY phone_number_list_expires_idx
    ON phone_number_list (expires_at) WHERE expires_at IS NOT NULL;
