package controller

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes carried by *Error. They are Kafka's error code names where
// Kafka has one for the situation, so a broker can map them onto Kafka
// responses without a table of its own.
const (
	// CodeNotController: this controller is not the active one (or is still
	// catching up after an election). Retriable: the Client retries against
	// the leader by itself.
	CodeNotController = "NOT_CONTROLLER"
	// CodeRequestTimedOut: the quorum did not commit the change in time
	// (no majority reachable). Retriable.
	CodeRequestTimedOut = "REQUEST_TIMED_OUT"
	// CodeClusterAuthorizationFailed: missing or wrong admin token.
	CodeClusterAuthorizationFailed = "CLUSTER_AUTHORIZATION_FAILED"
	// CodeInvalidRequest: the request is malformed or asks for something
	// that can never succeed; the message says what.
	CodeInvalidRequest = "INVALID_REQUEST"
	// CodeStaleBrokerEpoch: the broker epoch is not the current registration's; re-register.
	CodeStaleBrokerEpoch = "STALE_BROKER_EPOCH"
	// CodeBrokerNotRegistered: no broker with this id is registered; register first.
	CodeBrokerNotRegistered = "BROKER_ID_NOT_REGISTERED"
	// CodeDuplicateBrokerRegistration: another live incarnation holds the id.
	CodeDuplicateBrokerRegistration = "DUPLICATE_BROKER_REGISTRATION"
	// CodeFencedLeaderEpoch: the request carries an older leader epoch than the controller's.
	CodeFencedLeaderEpoch = "FENCED_LEADER_EPOCH"
	// CodeInvalidUpdateVersion: the partition epoch is stale; refresh metadata and retry.
	CodeInvalidUpdateVersion = "INVALID_UPDATE_VERSION"
	// CodeNotLeaderOrFollower: the requesting broker is not the partition's leader.
	CodeNotLeaderOrFollower = "NOT_LEADER_OR_FOLLOWER"
	// CodeIneligibleReplica: a replica added to the ISR is fenced or shutting down.
	CodeIneligibleReplica = "INELIGIBLE_REPLICA"
	// CodeUnknownTopicOrPartition: no such topic or partition.
	CodeUnknownTopicOrPartition = "UNKNOWN_TOPIC_OR_PARTITION"
	// CodeUnknownTopicID: no topic with this id.
	CodeUnknownTopicID = "UNKNOWN_TOPIC_ID"
	// CodeTopicAlreadyExists: a topic with this name (or a colliding one) exists.
	CodeTopicAlreadyExists = "TOPIC_ALREADY_EXISTS"
	// CodeInvalidTopicException: the topic name is not legal.
	CodeInvalidTopicException = "INVALID_TOPIC_EXCEPTION"
	// CodeInvalidPartitions: bad partition count.
	CodeInvalidPartitions = "INVALID_PARTITIONS"
	// CodeInvalidReplicationFactor: bad replication factor, or more than the cell's live brokers.
	CodeInvalidReplicationFactor = "INVALID_REPLICATION_FACTOR"
	// CodeInvalidReplicaAssignment: an explicit assignment names unknown,
	// fenced or duplicate brokers, or spans cells.
	CodeInvalidReplicaAssignment = "INVALID_REPLICA_ASSIGNMENT"
	// CodeInvalidConfig: a config name or value was refused.
	CodeInvalidConfig = "INVALID_CONFIG"
	// CodeElectionNotNeeded: the partition already has the wanted leader.
	CodeElectionNotNeeded = "ELECTION_NOT_NEEDED"
	// CodePreferredLeaderNotAvailable: the preferred replica cannot lead now.
	CodePreferredLeaderNotAvailable = "PREFERRED_LEADER_NOT_AVAILABLE"
	// CodeEligibleLeadersNotAvailable: no replica can lead (none alive, or none in the ISR and unclean is off).
	CodeEligibleLeadersNotAvailable = "ELIGIBLE_LEADERS_NOT_AVAILABLE"
	// CodeNoReassignmentInProgress: cancelling a reassignment that does not exist.
	CodeNoReassignmentInProgress = "NO_REASSIGNMENT_IN_PROGRESS"
	// CodeReassignmentInProgress: the operation conflicts with an in-progress reassignment.
	CodeReassignmentInProgress = "REASSIGNMENT_IN_PROGRESS"
	// CodeUnknownServerError: an unexpected failure; the message has details.
	CodeUnknownServerError = "UNKNOWN_SERVER_ERROR"
)

// Error is the error every controller operation returns for a refused or
// failed request: a Kafka error code name and a message that says what to do.
// Compare codes with errors.Is against the Err* values, or read Code.
type Error struct {
	// Code is a Kafka error code name such as FENCED_LEADER_EPOCH.
	Code string `json:"code"`
	// Message explains the refusal and what to do about it.
	Message string `json:"message"`
	// LeaderID and LeaderAddr, on NOT_CONTROLLER, name the active controller
	// when it is known (id and HTTP address).
	LeaderID   string `json:"leader_id,omitempty"`
	LeaderAddr string `json:"leader_addr,omitempty"`
}

// Error returns "CODE: message".
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is reports whether target is an *Error with the same code, so
// errors.Is(err, controller.ErrNotController) works on any message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Retriable reports whether the same request may succeed if sent again
// later (to the new leader).
func (e *Error) Retriable() bool {
	switch e.Code {
	case CodeNotController, CodeRequestTimedOut:
		return true
	}
	return false
}

// Sentinels for errors.Is.
var (
	ErrNotController               = &Error{Code: CodeNotController}
	ErrRequestTimedOut             = &Error{Code: CodeRequestTimedOut}
	ErrClusterAuthorizationFailed  = &Error{Code: CodeClusterAuthorizationFailed}
	ErrInvalidRequest              = &Error{Code: CodeInvalidRequest}
	ErrStaleBrokerEpoch            = &Error{Code: CodeStaleBrokerEpoch}
	ErrBrokerNotRegistered         = &Error{Code: CodeBrokerNotRegistered}
	ErrDuplicateBrokerRegistration = &Error{Code: CodeDuplicateBrokerRegistration}
	ErrFencedLeaderEpoch           = &Error{Code: CodeFencedLeaderEpoch}
	ErrInvalidUpdateVersion        = &Error{Code: CodeInvalidUpdateVersion}
	ErrNotLeaderOrFollower         = &Error{Code: CodeNotLeaderOrFollower}
	ErrIneligibleReplica           = &Error{Code: CodeIneligibleReplica}
	ErrUnknownTopicOrPartition     = &Error{Code: CodeUnknownTopicOrPartition}
	ErrUnknownTopicID              = &Error{Code: CodeUnknownTopicID}
	ErrTopicAlreadyExists          = &Error{Code: CodeTopicAlreadyExists}
	ErrInvalidTopic                = &Error{Code: CodeInvalidTopicException}
	ErrInvalidPartitions           = &Error{Code: CodeInvalidPartitions}
	ErrInvalidReplicationFactor    = &Error{Code: CodeInvalidReplicationFactor}
	ErrInvalidReplicaAssignment    = &Error{Code: CodeInvalidReplicaAssignment}
	ErrInvalidConfig               = &Error{Code: CodeInvalidConfig}
	ErrElectionNotNeeded           = &Error{Code: CodeElectionNotNeeded}
	ErrPreferredLeaderNotAvailable = &Error{Code: CodePreferredLeaderNotAvailable}
	ErrEligibleLeadersNotAvailable = &Error{Code: CodeEligibleLeadersNotAvailable}
	ErrNoReassignmentInProgress    = &Error{Code: CodeNoReassignmentInProgress}
	ErrReassignmentInProgress      = &Error{Code: CodeReassignmentInProgress}
	ErrUnknownServerError          = &Error{Code: CodeUnknownServerError}
)

// errorf builds an *Error with a formatted message.
func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// asError converts any error into an *Error (UNKNOWN_SERVER_ERROR unless it
// already is one).
func asError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeUnknownServerError, Message: err.Error()}
}

// httpStatus is the HTTP status the API answers an error code with. Clients
// read the code from the JSON body; the status is for humans and proxies.
func httpStatus(code string) int {
	switch code {
	case CodeNotController:
		return http.StatusMisdirectedRequest
	case CodeRequestTimedOut:
		return http.StatusServiceUnavailable
	case CodeClusterAuthorizationFailed:
		return http.StatusUnauthorized
	case CodeUnknownTopicOrPartition, CodeUnknownTopicID, CodeBrokerNotRegistered:
		return http.StatusNotFound
	case CodeInvalidRequest, CodeInvalidTopicException, CodeInvalidPartitions, CodeInvalidReplicationFactor,
		CodeInvalidReplicaAssignment, CodeInvalidConfig:
		return http.StatusBadRequest
	case CodeUnknownServerError:
		return http.StatusInternalServerError
	}
	return http.StatusConflict
}
